"""The ML backend protocol that Label Studio speaks: /health, /setup, /predict, /webhook...

Thin views over `orchestrator.learning` services; errors become 4xx JSON here, at the edge.
"""
