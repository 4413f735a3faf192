"""Prior-box configurations, one module per family, with the original toolkit's module names; each also
holds ``native_config``, the same settings as one :class:`~vision.ssd.config.base.SSDConfig` value."""
