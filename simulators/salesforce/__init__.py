"""A stateful fake of a Salesforce org's Revenue Cloud Billing API (token, SOQL subset, void, generate, recover).

It is an independent implementation of the vendor contract (`../shared/reference/salesforce-billing-api.md`):
it never imports orchestrator code.
"""

from simulators.salesforce.app import SalesforceApp
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState, SeededRun

__all__ = ["SalesforceApp", "SalesforceFaults", "SalesforceState", "SeededRun", "simulator_server"]
