"""`python -m simulators.imis --invoices 2000 --seed 7`"""

from simulators.imis.cli import imis

if __name__ == "__main__":
    imis()
