"""`python -m simulators.aria --invoices 2000 --seed 7`"""

from simulators.aria.cli import aria

if __name__ == "__main__":
    aria()
