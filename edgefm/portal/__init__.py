"""The edgefm portal: the fleet in a browser, over the fleet library and the Automation API."""
