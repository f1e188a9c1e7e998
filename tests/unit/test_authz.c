/*
 * test_authz.c - the reach and permission rules of policies/authz.c, cell
 * by cell on a small hierarchy: platform P, partner R, msps M and N, M's
 * clients A and B, N's client C.
 */
#include <string.h>

#include "policies/authz.h"
#include "t.h"

static const pol_tenant_t P = { "p", "", POL_PLATFORM };
static const pol_tenant_t R = { "r", "p", POL_PARTNER };
static const pol_tenant_t M = { "m", "p", POL_MSP };
static const pol_tenant_t N = { "n", "p", POL_MSP };
static const pol_tenant_t A = { "a", "m", POL_CLIENT };
static const pol_tenant_t B = { "b", "m", POL_CLIENT };
static const pol_tenant_t C = { "c", "n", POL_CLIENT };

static pol_subject_t who(const pol_tenant_t *t, unsigned roles)
{
	pol_subject_t s = { *t, roles & pol_roles_allowed(t->kind) };

	return s;
}

int main(void)
{
	pol_subject_t pa = who(&P, POL_R_PLATFORM_ADMIN), ma = who(&M, POL_R_MSP_ADMIN),
		      mo = who(&M, POL_R_MSP_OPERATOR), ca = who(&A, POL_R_CLIENT_ADMIN),
		      cu = who(&A, POL_R_CLIENT_USER), ra = who(&R, POL_R_PARTNER_ADMIN),
		      fake = who(&M, POL_R_PLATFORM_ADMIN);	/* masked away */

	/* reach */
	T_OK(pol_reaches(&pa, &C) && pol_reaches(&pa, &R), "platform admin reaches every tenant");
	T_OK(pol_reaches(&ma, &M) && pol_reaches(&ma, &A) && pol_reaches(&ma, &B), "msp reaches itself and its clients");
	T_OK(!pol_reaches(&ma, &N) && !pol_reaches(&ma, &C) && !pol_reaches(&ma, &P), "msp does not reach others");
	T_OK(pol_reaches(&ca, &A) && !pol_reaches(&ca, &B) && !pol_reaches(&ca, &M), "client reaches only itself");
	T_OK(!pol_reaches(&ra, &M) && pol_reaches(&ra, &R), "partner reaches only itself");
	T_OK(fake.roles == 0 && !pol_reaches(&fake, &N), "a role the tenant's kind cannot hold grants nothing");

	/* outside reach is 404 whatever the permission */
	for (int p = 0; p < POL_PERM_COUNT; p++) {
		T_OK(pol_decide(&ca, &B, (enum pol_perm)p) == POL_NOT_FOUND, pol_perm_name((enum pol_perm)p));
		T_OK(pol_decide(&ma, &C, (enum pol_perm)p) == POL_NOT_FOUND, "foreign client is 404");
	}

	T_OK(pol_decide(&cu, &A, POL_READ) == POL_ALLOW, "client user reads its tenant");
	T_OK(pol_decide(&cu, &A, POL_EDIT) == POL_FORBIDDEN, "client user cannot edit");
	T_OK(pol_decide(&ca, &A, POL_EDIT) == POL_ALLOW, "client admin edits its tenant");
	T_OK(pol_decide(&ma, &A, POL_EDIT) == POL_ALLOW, "msp admin edits its client");
	T_OK(pol_decide(&mo, &A, POL_EDIT) == POL_FORBIDDEN, "msp operator cannot edit a client");
	T_OK(pol_decide(&mo, &A, POL_READ) == POL_ALLOW, "msp operator reads its clients");

	T_OK(pol_decide(&pa, &P, POL_CREATE_TENANT) == POL_ALLOW, "platform admin creates tenants");
	T_OK(pol_decide(&ma, &M, POL_CREATE_TENANT) == POL_FORBIDDEN, "msp admin cannot create msps");

	T_OK(pol_decide(&ma, &M, POL_CREATE_CLIENT) == POL_ALLOW, "msp admin creates its clients");
	T_OK(pol_decide(&mo, &M, POL_CREATE_CLIENT) == POL_FORBIDDEN, "msp operator cannot");
	T_OK(pol_decide(&pa, &N, POL_CREATE_CLIENT) == POL_ALLOW, "platform admin creates clients anywhere");
	T_OK(pol_decide(&pa, &R, POL_CREATE_CLIENT) == POL_NOT_FOUND, "a partner has no clients collection");
	T_OK(pol_decide(&ca, &A, POL_CREATE_CLIENT) == POL_NOT_FOUND, "a client has no clients collection");

	T_OK(pol_decide(&ma, &A, POL_LIFECYCLE) == POL_ALLOW, "msp admin suspends its client");
	T_OK(pol_decide(&ma, &M, POL_LIFECYCLE) == POL_FORBIDDEN, "nobody suspends their own tenant");
	T_OK(pol_decide(&ca, &A, POL_LIFECYCLE) == POL_FORBIDDEN, "client admin cannot suspend itself");
	T_OK(pol_decide(&pa, &M, POL_LIFECYCLE) == POL_ALLOW, "platform admin suspends an msp");
	T_OK(pol_decide(&pa, &P, POL_LIFECYCLE) == POL_FORBIDDEN, "the platform cannot be suspended");

	T_OK(pol_decide(&ra, &R, POL_API_CLIENTS) == POL_ALLOW, "partner admin manages its API clients");
	T_OK(pol_decide(&ra, &R, POL_USERS) == POL_FORBIDDEN, "partners have no portal users");
	T_OK(pol_decide(&ca, &A, POL_USERS) == POL_ALLOW, "client admin manages users");
	T_OK(pol_decide(&ma, &B, POL_USERS) == POL_ALLOW, "msp admin manages its clients' users");
	T_OK(pol_decide(&cu, &A, POL_USERS) == POL_FORBIDDEN, "client user cannot");
	T_OK(pol_decide(&pa, &P, POL_USERS) == POL_FORBIDDEN, "no portal users on the platform");
	T_OK(pol_decide(&ca, &A, POL_POLICY) == POL_ALLOW && pol_decide(&cu, &A, POL_POLICY) == POL_FORBIDDEN,
	     "policy is for admins");

	T_OK(pol_decide(&ca, &A, POL_CREDENTIALS) == POL_ALLOW && pol_decide(&ma, &B, POL_CONNECTORS) == POL_ALLOW,
	     "client admin and its msp admin hold the vault and connectors");
	T_OK(pol_decide(&cu, &A, POL_CREDENTIALS) == POL_FORBIDDEN && pol_decide(&mo, &A, POL_CONNECTORS) == POL_FORBIDDEN,
	     "client user and msp operator do not");
	T_OK(pol_decide(&pa, &P, POL_CREDENTIALS) == POL_NOT_FOUND && pol_decide(&ra, &R, POL_CONNECTORS) == POL_NOT_FOUND,
	     "the platform and partners have no vault or connectors");

	T_OK(pol_decide(&ma, &M, POL_WORKFLOWS) == POL_ALLOW && pol_decide(&ma, &A, POL_WORKFLOWS) == POL_ALLOW &&
	     pol_decide(&ca, &A, POL_WORKFLOWS) == POL_ALLOW && pol_decide(&pa, &C, POL_WORKFLOWS) == POL_ALLOW,
	     "msp admin, client admin and the platform admin write workflows");
	T_OK(pol_decide(&mo, &M, POL_WORKFLOWS) == POL_ALLOW && pol_decide(&mo, &B, POL_WORKFLOWS) == POL_ALLOW &&
	     pol_decide(&mo, &B, POL_RUNS) == POL_ALLOW,
	     "msp operator writes workflows and runs them on the msp and its clients");
	T_OK(pol_decide(&cu, &A, POL_WORKFLOWS) == POL_FORBIDDEN && pol_decide(&cu, &A, POL_RUNS) == POL_ALLOW,
	     "client user starts runs but does not write workflows");
	T_OK(pol_decide(&mo, &C, POL_RUNS) == POL_NOT_FOUND && pol_decide(&cu, &B, POL_RUNS) == POL_NOT_FOUND,
	     "no runs outside reach");
	T_OK(pol_decide(&pa, &P, POL_WORKFLOWS) == POL_NOT_FOUND && pol_decide(&ra, &R, POL_RUNS) == POL_NOT_FOUND,
	     "the platform and partners have no workflows");
	{
		pol_subject_t ap = who(&A, 0);	/* a tenant-defined role only */
		pol_subject_t mu = who(&M, POL_R_CLIENT_USER);	/* masked away in an msp */

		T_OK(pol_decide(&ap, &A, POL_RUNS) == POL_FORBIDDEN && pol_decide(&ap, &A, POL_READ) == POL_ALLOW,
		     "an approver-only token reads but does not run");
		T_OK(pol_decide(&mu, &M, POL_RUNS) == POL_FORBIDDEN, "client_user means nothing in an msp");
	}
	T_OK(pol_decide(&ra, &R, POL_TEMPLATES) == POL_ALLOW, "partner admin publishes on its own partner");
	T_OK(pol_decide(&pa, &R, POL_TEMPLATES) == POL_FORBIDDEN, "not even the platform admin signs for a partner");
	T_OK(pol_decide(&ma, &M, POL_TEMPLATES) == POL_NOT_FOUND && pol_decide(&pa, &P, POL_TEMPLATES) == POL_NOT_FOUND &&
	     pol_decide(&ca, &A, POL_TEMPLATES) == POL_NOT_FOUND, "only partners have templates");
	{
		pol_subject_t rn = who(&R, 0);

		T_OK(pol_decide(&rn, &R, POL_TEMPLATES) == POL_FORBIDDEN, "a partner token without partner_admin cannot");
		T_OK(pol_decide(&rn, &R, POL_CATALOG) == POL_FORBIDDEN, "nor read the catalog with no built-in role");
	}
	T_OK(pol_decide(&pa, &P, POL_CATALOG) == POL_ALLOW && pol_decide(&ra, &R, POL_CATALOG) == POL_ALLOW &&
	     pol_decide(&ma, &M, POL_CATALOG) == POL_ALLOW && pol_decide(&mo, &M, POL_CATALOG) == POL_ALLOW,
	     "platform, partner and msp callers read the catalog");
	T_OK(pol_decide(&ca, &A, POL_CATALOG) == POL_FORBIDDEN && pol_decide(&cu, &A, POL_CATALOG) == POL_FORBIDDEN,
	     "clients do not read the catalog");
	T_OK(pol_decide(&ma, &A, POL_CATALOG) == POL_FORBIDDEN, "the catalog is read as one's own tenant");
	T_OK(pol_decide(&ca, &A, POL_AUDIT) == POL_ALLOW && pol_decide(&ma, &A, POL_AUDIT) == POL_ALLOW &&
	     pol_decide(&pa, &A, POL_AUDIT) == POL_ALLOW, "the audit log: own admin, the msp's admin, the platform");
	T_OK(pol_decide(&cu, &A, POL_AUDIT) == POL_FORBIDDEN && pol_decide(&mo, &A, POL_AUDIT) == POL_FORBIDDEN,
	     "client users and msp operators do not read the audit log");
	T_OK(strcmp(pol_perm_name(POL_AUDIT), "audit") == 0, "the audit permission's name");
	T_OK(strcmp(pol_perm_name(POL_TEMPLATES), "templates") == 0 && strcmp(pol_perm_name(POL_CATALOG), "catalog") == 0,
	     "template permission names");
	T_OK(strcmp(pol_perm_name(POL_WORKFLOWS), "workflows") == 0 && strcmp(pol_perm_name(POL_RUNS), "runs") == 0,
	     "permission names");

	/* roles */
	T_OK(pol_role_grantable(POL_CLIENT, "finance_approver"), "tenant-defined roles in clients");
	T_OK(!pol_role_grantable(POL_PARTNER, "finance_approver"), "not in partners");
	T_OK(!pol_role_grantable(POL_CLIENT, "msp_admin"), "no built-in role of another kind");
	T_OK(!pol_role_grantable(POL_CLIENT, "Bad-Role") && !pol_role_grantable(POL_CLIENT, "x"), "role names are checked");
	T_OK(pol_kind_parse("msp") == POL_MSP && pol_kind_parse("MSP") == POL_KIND_NONE, "kinds parse exactly");
	return t_done();
}
