package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/latchkey/latchkey/store"
)

// TestGroupAdminsActOnTheirMembersOnly: a group's admin contact (not a
// global admin) sees and decides their members' reset requests and
// nobody else's: not outside their groups, not a member also in a stricter
// group, not an admin, not themselves. Each refusal is 403 with a stable
// code and audited; each decision names the basis.
func TestGroupAdminsActOnTheirMembersOnly(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newAdminFixture(t, st)
		srv, ctx := f.srv, context.Background()
		gina := srv.createUser(t, "gina", true)
		sam := srv.createUser(t, "sam", true)
		pat := srv.createUser(t, "pat", true)
		otto := srv.createUser(t, "otto", true)
		adele := srv.createUser(t, "adele", true)
		staff, _ := srv.policyGroup(t, "Staff", true, gina, sam, pat, adele)
		srv.policyGroup(t, "Privileged", false, pat)
		fin, _ := srv.policyGroup(t, "Finance", false, otto, adele)
		for _, ga := range []struct{ g, u string }{{staff.ID, gina.ID}, {fin.ID, adele.ID}} {
			if err := st.AddGroupAdmin(ctx, ga.g, ga.u); err != nil {
				t.Fatal(err)
			}
		}
		requests := map[string]string{}
		for _, u := range []user{gina, sam, pat, otto, adele} {
			id := "rr-" + u.Username
			if err := st.CreateResetRequest(ctx, store.ResetRequest{ID: id, UserID: u.ID, Status: store.ResetOpen, CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			requests[u.Username] = id
		}
		r := newRP(t, srv, f.console)
		r.conf.Scopes = []string{"openid", "admin"}
		tok, _ := signInTo(t, newBrowser(t, srv.URL), r, gina)
		ginaToken := tok.AccessToken

		list := f.call(t, ginaToken, "GET", "/admin/reset-requests", nil)
		got, _ := list.Body["reset_requests"].([]any)
		if list.Status != 200 || len(got) != 1 || got[0].(map[string]any)["id"] != requests["sam"] {
			t.Fatalf("a group admin sees their members' requests only: %d %v", list.Status, list.Body)
		}
		for who, code := range map[string]string{"otto": "not_your_member", "pat": "stricter_group", "gina": "self_action", "adele": "target_is_admin"} {
			res := f.call(t, ginaToken, "POST", "/admin/reset-requests/"+requests[who]+"/approve", nil)
			if res.Status != http.StatusForbidden || errCode(res) != code {
				t.Errorf("approve %s's request: %d %v, want 403 %s", who, res.Status, res.Body, code)
			}
		}
		if del := f.call(t, ginaToken, "DELETE", "/admin/users/"+otto.ID+"/mfa", nil); del.Status != http.StatusForbidden || errCode(del) != "not_your_member" {
			t.Errorf("remove an outsider's 2SV: %d %v", del.Status, del.Body)
		}
		if n := auditCount(t, srv, "admin.action.denied", ""); n != 5 {
			t.Errorf("each refusal is audited: %d events", n)
		}
		for _, u := range []user{gina, pat, otto, adele} {
			if !hasTOTP(t, srv, u) {
				t.Fatalf("%s lost 2SV", u.Username)
			}
		}
		if bad := f.call(t, ginaToken, "POST", "/admin/reset-requests/"+requests["sam"]+"/approve", map[string]any{"reason": "ok\u0000"}); bad.Status != http.StatusBadRequest || errCode(bad) != "invalid_input" || !hasTOTP(t, srv, sam) {
			t.Fatalf("a reason with a NUL: %d %v", bad.Status, bad.Body)
		}
		if ok := f.call(t, ginaToken, "POST", "/admin/reset-requests/"+requests["sam"]+"/approve", map[string]any{"reason": "Checked by phone."}); ok.Status != http.StatusNoContent || hasTOTP(t, srv, sam) {
			t.Fatalf("approve a member's request: %d %v", ok.Status, ok.Body)
		}
		if d := lastEvent(t, st, "mfa.reset.approved", sam.ID); d["basis"] != "admin of Staff" || d["reason"] != "Checked by phone." {
			t.Fatalf("the decision names its basis: %v", d)
		}
		// Reads: members only; global routes refused.
		if g := f.call(t, ginaToken, "GET", "/admin/users/"+sam.ID, nil); g.Status != 200 {
			t.Errorf("read a member: %d", g.Status)
		}
		if g := f.call(t, ginaToken, "GET", "/admin/users/"+otto.ID, nil); g.Status != http.StatusForbidden {
			t.Errorf("read an outsider: %d", g.Status)
		}
		if g := f.call(t, ginaToken, "GET", "/admin/audit?subject="+sam.ID, nil); g.Status != 200 {
			t.Errorf("a member's audit events: %d %v", g.Status, g.Body)
		}
		if g := f.call(t, ginaToken, "GET", "/admin/audit", nil); g.Status != http.StatusUnprocessableEntity {
			t.Errorf("the whole audit log: %d", g.Status)
		}
		if g := f.call(t, ginaToken, "GET", "/admin/audit?subject="+otto.ID, nil); g.Status != http.StatusForbidden {
			t.Errorf("an outsider's audit events: %d", g.Status)
		}
		for _, rt := range []struct{ method, path string }{{"GET", "/admin/users"}, {"GET", "/admin/groups"}, {"POST", "/admin/keys/rotate"}, {"GET", "/admin/audit/export"}} {
			if g := f.call(t, ginaToken, rt.method, rt.path, nil); g.Status != http.StatusForbidden || errCode(g) != "global_admin_only" {
				t.Errorf("%s %s as a group admin: %d %v", rt.method, rt.path, g.Status, g.Body)
			}
		}
		// A global admin may act on the stricter group's member.
		if ok := f.call(t, f.adminToken, "POST", "/admin/reset-requests/"+requests["pat"]+"/approve", nil); ok.Status != http.StatusNoContent {
			t.Fatalf("global admin: %d %v", ok.Status, ok.Body)
		}
		if d := lastEvent(t, st, "mfa.reset.approved", pat.ID); d["basis"] != "global admin" {
			t.Fatalf("basis: %v", d)
		}
	})
}
