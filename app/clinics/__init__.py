"""The clinic as a tenant: its settings, and the admin routes over its clinicians and
API clients. The accounts themselves (and how they sign in) are `app.auth`'s."""
