"""Stripe's request parameters as the pinned stripe SDK defines them, held against what the sandbox is sent.

Stripe publishes its API as an OpenAPI spec and generates the SDK's parameter types from it
(``stripe.params.*Params``, TypedDicts); no current spec file is available here, so those types are
the definition. A parameter a type does not declare, at any depth, is refused as Stripe refuses it:
400 ``parameter_unknown`` "Received unknown parameter: <name>" (docs.stripe.com/error-codes).
Only names are checked: form-encoded values arrive as strings.
"""

from __future__ import annotations

import sys
import typing
from functools import cache
from typing import Any

import stripe.params
from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

from billbridge.sandbox.stripe.state import StripeApiError

# route (as in app.ROUTES) -> the SDK's params type for it
PARAMS = {
    ("POST", r"/v1/customers"): "CustomerCreateParams",
    ("GET", r"/v1/customers"): "CustomerListParams",
    ("GET", r"/v1/customers/search"): "CustomerSearchParams",
    ("GET", r"/v1/customers/(cus_\w+)"): "CustomerRetrieveParams",
    ("POST", r"/v1/customers/(cus_\w+)"): "CustomerUpdateParams",
    ("POST", r"/v1/payment_methods/(pm_\w+)/attach"): "PaymentMethodAttachParams",
    ("GET", r"/v1/payment_methods/(pm_\w+)"): "PaymentMethodRetrieveParams",
    ("POST", r"/v1/products"): "ProductCreateParams",
    ("GET", r"/v1/products"): "ProductListParams",
    ("GET", r"/v1/products/(prod_\w+)"): "ProductRetrieveParams",
    ("POST", r"/v1/prices"): "PriceCreateParams",
    ("GET", r"/v1/prices"): "PriceListParams",
    ("GET", r"/v1/prices/(price_\w+)"): "PriceRetrieveParams",
    ("POST", r"/v1/subscriptions"): "SubscriptionCreateParams",
    ("GET", r"/v1/subscriptions"): "SubscriptionListParams",
    ("GET", r"/v1/subscriptions/(sub_\w+)"): "SubscriptionRetrieveParams",
    ("POST", r"/v1/subscriptions/(sub_\w+)"): "SubscriptionUpdateParams",
    ("DELETE", r"/v1/subscriptions/(sub_\w+)"): "SubscriptionCancelParams",
    ("POST", r"/v1/invoiceitems"): "InvoiceItemCreateParams",
    ("POST", r"/v1/invoices"): "InvoiceCreateParams",
    ("GET", r"/v1/invoices"): "InvoiceListParams",
    ("GET", r"/v1/invoices/search"): "InvoiceSearchParams",
    ("GET", r"/v1/invoices/(in_\w+)"): "InvoiceRetrieveParams",
    ("GET", r"/v1/invoices/(in_\w+)/lines"): "InvoiceLineItemListParams",
    ("POST", r"/v1/invoices/(in_\w+)/add_lines"): "InvoiceAddLinesParams",
    ("POST", r"/v1/invoices/(in_\w+)/finalize"): "InvoiceFinalizeInvoiceParams",
    ("POST", r"/v1/invoices/(in_\w+)/pay"): "InvoicePayParams",
    ("POST", r"/v1/invoices/(in_\w+)/void"): "InvoiceVoidInvoiceParams",
    ("POST", r"/v1/invoices/(in_\w+)/send"): "InvoiceSendInvoiceParams",
    ("POST", r"/v1/invoices/(in_\w+)/mark_uncollectible"): "InvoiceMarkUncollectibleParams",
    ("GET", r"/v1/invoice_payments"): "InvoicePaymentListParams",
    ("GET", r"/v1/payment_intents/(pi_\w+)"): "PaymentIntentRetrieveParams",
    ("GET", r"/v1/charges"): "ChargeListParams",
    ("GET", r"/v1/charges/(ch_\w+)"): "ChargeRetrieveParams",
    ("GET", r"/v1/balance_transactions/(txn_\w+)"): "BalanceTransactionRetrieveParams",
    ("POST", r"/v1/refunds"): "RefundCreateParams",
    ("GET", r"/v1/refunds"): "RefundListParams",
    ("GET", r"/v1/disputes"): "DisputeListParams",
    ("GET", r"/v1/disputes/(dp_\w+)"): "DisputeRetrieveParams",
    ("GET", r"/v1/events"): "EventListParams",
}
_OPTIONS = set(RequestOptions.__annotations__)


@cache
def _fields(cls: Any) -> dict[str, Any]:
    """The type's parameters (request options left out), forward references resolved in its module."""
    scope = vars(sys.modules[cls.__module__])
    return {k: _resolve(v, scope) for k, v in cls.__annotations__.items() if k not in _OPTIONS}


def _resolve(tp: Any, scope: dict[str, Any]) -> Any:
    if isinstance(tp, str):
        return _resolve(eval(tp, scope), scope)  # the SDK's own annotation strings
    if isinstance(tp, typing.ForwardRef):
        return _resolve(tp.__forward_arg__, scope)
    args = typing.get_args(tp)
    if not args or typing.get_origin(tp) is typing.Literal:
        return tp
    return (typing.get_origin(tp), tuple(_resolve(a, scope) for a in args))


def _typed_dicts(tp: Any) -> list[Any]:
    """The TypedDicts a resolved annotation can hold: the type, or (list/dict, type) for containers."""
    if not isinstance(tp, tuple):
        return [tp] if is_typeddict(tp) else []
    origin, args = tp
    if origin in (list, dict):  # typing.List/Dict resolve to these origins too
        return [(origin, t) for t in _typed_dicts(args[-1])]
    return [t for arg in args for t in _typed_dicts(arg)]


def unknown_parameters(type_name: str, params: dict[str, Any]) -> list[str]:
    """Bracketed names (``lines[0][foo]``) of parameters the SDK's ``type_name`` does not declare."""
    return _walk(getattr(stripe.params, type_name), params, "")


def _walk(cls: Any, value: Any, prefix: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    fields = _fields(cls)
    bad: list[str] = []
    for key, item in value.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in fields:
            bad.append(name)
            continue
        for shape in _typed_dicts(fields[key]):
            container, inner = shape if isinstance(shape, tuple) else (None, shape)
            if container is list and isinstance(item, list):
                found = [b for n, x in enumerate(item) for b in _walk(inner, x, f"{name}[{n}]")]
            elif container is dict and isinstance(item, dict):
                found = [b for k, x in item.items() for b in _walk(inner, x, f"{name}[{k}]")]
            elif container is None and isinstance(item, dict):
                found = _walk(inner, item, name)
            else:
                continue
            bad += found
            break
    return bad


def check(route: tuple[str, str], params: dict[str, Any]) -> None:
    """Raise Stripe's ``parameter_unknown`` for the first parameter the route's params type lacks."""
    type_name = PARAMS.get(route)
    unknown = unknown_parameters(type_name, params) if type_name else []
    if unknown:
        raise StripeApiError(
            400,
            {
                "type": "invalid_request_error",
                "code": "parameter_unknown",
                "doc_url": "https://stripe.com/docs/error-codes/parameter-unknown",
                "message": f"Received unknown parameter: {unknown[0]}",
                "param": unknown[0],
            },
            saved=False,
        )
