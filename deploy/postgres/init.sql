-- One database per service (each owns its data) plus Temporal's two.
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
CREATE DATABASE identity;
CREATE DATABASE preferences;
CREATE DATABASE sharing;
CREATE DATABASE fulfillment;
