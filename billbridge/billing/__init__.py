"""The money domain: pricing, periods, proration, invoice planning and lifecycle. Pure: no I/O."""
