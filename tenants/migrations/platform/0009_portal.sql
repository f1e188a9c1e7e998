-- Portal domains: a client claims a host name for its white-label portal;
-- the portal answers on it only once the claim is verified (a DNS TXT
-- record holding the token, or an explicit confirmation by the client's
-- msp admin or a platform admin).  A domain belongs to one tenant: the
-- primary key; a deleted tenant's claims are taken over by a new claimer.
CREATE TABLE portal_domains (
	domain      text PRIMARY KEY CHECK (domain ~ '^[a-z0-9.-]{3,253}$'),
	tenant_id   uuid NOT NULL REFERENCES tenants (id),
	token       text NOT NULL,
	verified_at timestamptz NULL,
	verified_by text NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX portal_domains_tenant_idx ON portal_domains (tenant_id);
