"""`python -m simulators.salesforce --invoices 2000 --seed 7`"""

from simulators.salesforce.cli import salesforce

if __name__ == "__main__":
    salesforce()
