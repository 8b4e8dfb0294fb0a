"""`python -m optimizer.fleet MODELS -o OUT_DIR`: the fleet command before it is registered in `optimize`."""

from optimizer.fleet.cli import fleet_command

if __name__ == "__main__":
    fleet_command(prog_name="optimize fleet")
