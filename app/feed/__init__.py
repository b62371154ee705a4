"""The clinic's change feed: every create, update and delete of what a clinic syncs, in
commit order, each as its own GET renders it (a view over the outbox, `app.sync`)."""
