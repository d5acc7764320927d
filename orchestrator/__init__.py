"""rebill: bulk reverse-and-rebill runs against billing platforms."""
