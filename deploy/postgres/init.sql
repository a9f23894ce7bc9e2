-- One database per service (each owns its data). Temporal's two databases (temporal,
-- temporal_visibility) are created by lethe-temporal itself.
CREATE DATABASE identity;
CREATE DATABASE preferences;
CREATE DATABASE sharing;
CREATE DATABASE fulfillment;
