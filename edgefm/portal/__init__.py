"""The edgefm portal: the fleet in a browser, over the fleet service and the checkout."""
