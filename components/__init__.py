"""edgefm's Pulumi component resources: the hub cluster, each spoke appliance and the parts they compose."""
