"""`python -m simulators.energycap --bills 2000 --seed 7`"""

from simulators.energycap.cli import energycap

if __name__ == "__main__":
    energycap()
