"""Graph helpers the framework and the passes share: constant values, safe edits, pattern matching, shapes.

- `values`: what a value holds when it is a constant (initializer or Constant node), static shapes.
- `constants`: rewriting what a constant holds.
- `editing`: bypassing and replacing nodes while keeping the graph's interface.
- `matching`: small predicates fusion rules match with.
- `shapes`: shape inference into the IR.

Nothing here imports the registered passes (`passes/`); they import this.
"""
