"""Jobs that wire connectors, mapping, store and billing together (Prefect flows in the orchestration issue).

Importing them (as a Prefect worker does to run a flow) redacts credentials in the vendor libraries'
logs (``billbridge.redaction``).
"""

from billbridge import redaction

redaction.install()
