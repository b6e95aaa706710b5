"""The orchestration service on Azure Service Bus: DTF's Service Bus provider, without transactions.

``entities`` defines a hub's three queues (for Azure, Microsoft's emulator and the embedded one);
``messages`` the message envelope; ``session_state`` the history kept in session state and blob
chunks; ``orchestrations``, ``activities`` and ``tracking`` the three dispatchers; ``_episode`` the
commit protocol that replaces DTF's cross-entity transaction. Users normally only touch
``dtf_sb.TaskHubWorker`` and ``dtf_sb.TaskHubClient``.
"""
