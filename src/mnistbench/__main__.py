"""python -m mnistbench"""

from .cli import main

main()
