"""Vendor connectors (Salesforce, HubSpot, QuickBooks Online, Stripe) through their official SDKs.

Each vendor gets its own sub-package; they never touch the store or know canonical models.
Built by the CRM sync and push/reconcile issues.
"""
