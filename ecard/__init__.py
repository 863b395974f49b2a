"""ecard: the backend of the electronic social security card."""
