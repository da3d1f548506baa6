"""python -m robot"""

from robot.cli import main

main()
