"""One module per ``gptlab analyze`` view: its options dataclass and ``run(run, options)``,
registered in gptlab.interpret.ANALYSES. The maths they report lives beside this folder
(gptlab/interpret/attention.py, lens.py, ...); these modules import it inside ``run``."""
