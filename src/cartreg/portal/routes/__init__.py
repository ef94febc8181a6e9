"""The portal's routes, one module per area: sign-in (``common``), a site's pages (``site``),
pages a site user and a coordinator share (``shared``: submissions and uploads, scoped to the
user's site), the coordinating centre (``coordinator``) and statisticians (``statistician``)."""
