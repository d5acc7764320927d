"""The web view of runs (`rebill web`) and the HTML report (`rebill report RUN --format html`)."""
