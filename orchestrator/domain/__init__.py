"""Pure domain: runs, items, states and transitions, and the billing concepts they act on."""
