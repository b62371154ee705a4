"""The worker: every piece of background work, in one process beside the API (`dorsi worker`)."""
