/*
 * authz.c - the reach and permission rules (see authz.h).  The table of who
 * holds which permission is written out once, here; docs/authorization.md
 * describes it and the matrix test checks the server against it.
 */
#include <string.h>

#include "policies/authz.h"

static const struct { const char *name; unsigned bit; enum pol_kind kind; } roles[] = {
	{ "platform_admin", POL_R_PLATFORM_ADMIN, POL_PLATFORM },
	{ "partner_admin", POL_R_PARTNER_ADMIN, POL_PARTNER },
	{ "msp_admin", POL_R_MSP_ADMIN, POL_MSP },
	{ "msp_operator", POL_R_MSP_OPERATOR, POL_MSP },
	{ "client_admin", POL_R_CLIENT_ADMIN, POL_CLIENT },
	{ "client_user", POL_R_CLIENT_USER, POL_CLIENT },
};

static const char *const kinds[] = { "", "platform", "partner", "msp", "client" };

enum pol_kind pol_kind_parse(const char *s)
{
	for (int k = POL_PLATFORM; k <= POL_CLIENT; k++)
		if (strcmp(s, kinds[k]) == 0)
			return (enum pol_kind)k;
	return POL_KIND_NONE;
}

const char *pol_kind_name(enum pol_kind k)
{
	return k >= POL_PLATFORM && k <= POL_CLIENT ? kinds[k] : "";
}

unsigned pol_role_bit(const char *name)
{
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(name, roles[i].name) == 0)
			return roles[i].bit;
	return 0;
}

unsigned pol_roles_allowed(enum pol_kind k)
{
	unsigned m = 0;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].kind == k)
			m |= roles[i].bit;
	return m;
}

bool pol_role_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n < 2 || n > 63 || name[0] < 'a' || name[0] > 'z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
			return false;
	return true;
}

bool pol_role_grantable(enum pol_kind k, const char *name)
{
	unsigned bit;

	if (!pol_role_name_ok(name))
		return false;
	bit = pol_role_bit(name);
	if (bit)
		return (pol_roles_allowed(k) & bit) != 0;
	/* a name that looks like a built-in role of some other kind is not
	 * a tenant-defined role either */
	return k == POL_MSP || k == POL_CLIENT;
}

static bool is_platform_admin(const pol_subject_t *w)
{
	return w->tenant.kind == POL_PLATFORM && (w->roles & POL_R_PLATFORM_ADMIN);
}

/* The msp that owns target (a client), or NULL. */
static bool is_parent_msp(const pol_subject_t *w, const pol_tenant_t *t)
{
	return w->tenant.kind == POL_MSP && t->kind == POL_CLIENT && strcmp(t->parent_id, w->tenant.id) == 0;
}

static bool is_self(const pol_subject_t *w, const pol_tenant_t *t)
{
	return strcmp(w->tenant.id, t->id) == 0;
}

bool pol_reaches(const pol_subject_t *w, const pol_tenant_t *t)
{
	return is_platform_admin(w) || is_self(w, t) || is_parent_msp(w, t);
}

/* The admin role of a tenant of kind k, held by someone of that tenant. */
static unsigned own_admin_role(enum pol_kind k)
{
	switch (k) {
	case POL_PLATFORM: return POL_R_PLATFORM_ADMIN;
	case POL_PARTNER: return POL_R_PARTNER_ADMIN;
	case POL_MSP: return POL_R_MSP_ADMIN;
	case POL_CLIENT: return POL_R_CLIENT_ADMIN;
	default: return 0;
	}
}

/* Administers t: the platform admin, t's own admin, or its msp's admin. */
static bool admin_over(const pol_subject_t *w, const pol_tenant_t *t)
{
	if (is_platform_admin(w))
		return true;
	if (is_self(w, t))
		return (w->roles & own_admin_role(t->kind)) != 0;
	return is_parent_msp(w, t) && (w->roles & POL_R_MSP_ADMIN);
}

/* Operates t's workflows: whoever administers it, and an msp's operators
 * on the msp and its clients. */
static bool operator_over(const pol_subject_t *w, const pol_tenant_t *t)
{
	if (admin_over(w, t))
		return true;
	return w->tenant.kind == POL_MSP && (is_self(w, t) || is_parent_msp(w, t)) &&
	       (w->roles & POL_R_MSP_OPERATOR);
}

enum pol_decision pol_decide(const pol_subject_t *w, const pol_tenant_t *t, enum pol_perm perm)
{
	bool ok = false;

	if (!pol_reaches(w, t))
		return POL_NOT_FOUND;
	switch (perm) {
	case POL_READ:
		ok = true;
		break;
	case POL_EDIT:
	case POL_API_CLIENTS:
	case POL_POLICY:
	case POL_AUDIT:		/* who administers a tenant answers for its record */
		ok = admin_over(w, t);
		break;
	case POL_CREATE_TENANT:
		ok = t->kind == POL_PLATFORM && is_platform_admin(w);
		break;
	case POL_CREATE_CLIENT:
		/* only an msp has clients: for any other kind the collection
		 * does not exist */
		if (t->kind != POL_MSP)
			return POL_NOT_FOUND;
		ok = is_platform_admin(w) || (is_self(w, t) && (w->roles & POL_R_MSP_ADMIN));
		break;
	case POL_LIFECYCLE:
		/* never one's own tenant: the parent msp's admin or the platform */
		ok = t->kind != POL_PLATFORM && !is_self(w, t) &&
		     (is_platform_admin(w) || (is_parent_msp(w, t) && (w->roles & POL_R_MSP_ADMIN)));
		break;
	case POL_CREDENTIALS:
	case POL_CONNECTORS:
		/* only tenants that run workflows have a vault and connectors */
		if (t->kind != POL_MSP && t->kind != POL_CLIENT)
			return POL_NOT_FOUND;
		ok = admin_over(w, t);
		break;
	case POL_WORKFLOWS:
	case POL_RUNS:
		/* only msps and clients run workflows */
		if (t->kind != POL_MSP && t->kind != POL_CLIENT)
			return POL_NOT_FOUND;
		/* a client's own users start runs and send events (what its
		 * portal does for them); definitions stay with operators */
		ok = operator_over(w, t) ||
		     (perm == POL_RUNS && is_self(w, t) && (w->roles & POL_R_CLIENT_USER));
		break;
	case POL_TEMPLATES:
		/* only a partner publishes; elsewhere the collection does
		 * not exist.  Its own admin only: a template carries the
		 * partner's signature, which nobody else can make anyway */
		if (t->kind != POL_PARTNER)
			return POL_NOT_FOUND;
		ok = is_self(w, t) && (w->roles & POL_R_PARTNER_ADMIN);
		break;
	case POL_CATALOG:
		/* the catalog is shared by everyone who installs or publishes:
		 * any built-in role of a platform, partner or msp tenant on
		 * its own tenant (clients install through their msp) */
		ok = is_self(w, t) && (t->kind == POL_PLATFORM || t->kind == POL_PARTNER || t->kind == POL_MSP) &&
		     (w->roles & pol_roles_allowed(t->kind)) != 0;
		break;
	case POL_USERS:
		/* portal users belong to msps and clients */
		ok = (t->kind == POL_MSP || t->kind == POL_CLIENT) && admin_over(w, t);
		break;
	default:
		ok = false;
	}
	return ok ? POL_ALLOW : POL_FORBIDDEN;
}

const char *pol_perm_name(enum pol_perm p)
{
	static const char *const names[POL_PERM_COUNT] = {
		"read", "edit", "create_tenant", "create_client", "lifecycle", "api_clients", "users", "policy",
		"credentials", "connectors", "workflows", "runs", "templates", "catalog", "audit",
	};

	return p < POL_PERM_COUNT ? names[p] : "";
}
