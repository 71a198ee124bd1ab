"""Gateway mode: the engine in its own process, holding credentials and the masking key.

``jupyter-gov gateway serve --policy FILE`` runs :class:`~jupyter_gov.gateway.server.GatewayServer`
(Arrow Flight); kernels reach it through :mod:`jupyter_gov.connectors.gateway` when
``GovMagic.gateway`` or ``$JUPYTER_GOV_GATEWAY`` names it. See docs/gateway.md.
"""
