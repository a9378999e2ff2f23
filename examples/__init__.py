"""Example apps that use the Login Portal; not part of the `oidc_provider` package."""
