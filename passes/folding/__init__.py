"""Folding passes: constants, static shapes, constant-condition If, initializer-inputs."""
