"""Site renderers: one module per export layout (redcap, excel, ehr, deid)."""
