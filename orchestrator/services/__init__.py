"""Use cases: coordinator (planning), reversal, rebill, poller, reconciler. Pure of infrastructure."""
