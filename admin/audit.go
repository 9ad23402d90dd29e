package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/latchkey/latchkey/audit"
	"github.com/latchkey/latchkey/internal/httpx"
	"github.com/latchkey/latchkey/store"
)

// Event is the admin view of an audit event.
type Event struct {
	ID            int64          `json:"id"`
	Time          time.Time      `json:"time"`
	Type          string         `json:"type"`
	Outcome       string         `json:"outcome"`
	Actor         map[string]any `json:"actor"`
	SubjectID     string         `json:"subject_id,omitempty"`
	ClientID      string         `json:"client_id,omitempty"`
	PolicyID      string         `json:"policy_id,omitempty"`
	PolicyVersion int            `json:"policy_version,omitempty"`
	IP            string         `json:"ip,omitempty"`
	UserAgent     string         `json:"user_agent,omitempty"`
	RequestID     string         `json:"request_id,omitempty"`
	Details       map[string]any `json:"details"`
	PrevHash      string         `json:"prev_hash"`
	Hash          string         `json:"hash"`
}

func ViewEvent(e store.AuditEvent) Event {
	v := Event{ID: e.ID, Time: e.Time, Type: e.Type, Outcome: e.Outcome, Actor: map[string]any{"type": e.ActorType, "id": e.ActorID},
		SubjectID: e.SubjectID, ClientID: e.ClientID, PolicyID: e.PolicyID, PolicyVersion: e.PolicyVersion, IP: e.IP, UserAgent: e.UserAgent,
		RequestID: e.RequestID, PrevHash: e.PrevHash, Hash: e.Hash}
	_ = json.Unmarshal([]byte(e.Details), &v.Details)
	return v
}

// AuditFilter reads the query filters shared by query and export.
func AuditFilter(r *http.Request) (store.AuditFilter, error) {
	q := r.URL.Query()
	f := store.AuditFilter{ActorID: q.Get("actor"), SubjectID: q.Get("subject"), TypePrefix: q.Get("type"), Outcome: q.Get("outcome")}
	fields := map[string]string{}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fields[name] = "must be an RFC 3339 time"
			}
			*dst = t
		}
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fields["after"] = "must be an event id (the previous page's next)"
		}
		f.AfterID = n
	}
	f.Limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fields["limit"] = "must be a number from 1 to 1000"
		}
		f.Limit = n
	}
	for _, k := range []string{"actor", "subject", "type", "outcome"} {
		if len(q.Get(k)) > 200 {
			fields[k] = "at most 200 characters"
		}
	}
	if len(fields) > 0 {
		return f, invalid(fields)
	}
	return f, nil
}

// queryAudit is GET /admin/audit: filters and cursor pagination.
func (h *Handler) queryAudit(w http.ResponseWriter, r *http.Request) {
	f, err := AuditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// Group admins read the events of one of their members at a time.
	if a := actorOf(r); !a.Global {
		if f.SubjectID == "" {
			h.fail(w, r, invalid(map[string]string{"subject": "required for group admins: one of your members"}))
			return
		}
		if err := h.Member(r.Context(), a, f.SubjectID); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	evs, err := h.o.Store.ListAuditEvents(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := EventPage{Events: make([]Event, 0, len(evs))}
	for _, e := range evs {
		out.Events = append(out.Events, ViewEvent(e))
	}
	if len(evs) == f.Limit {
		out.Next = strconv.FormatInt(evs[len(evs)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// exportAudit streams every matching event as JSON Lines, page by page, so
// a large log never sits in memory.
func (h *Handler) exportAudit(w http.ResponseWriter, r *http.Request) {
	f, err := AuditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f.Limit = 1000
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="latchkey-audit.jsonl"`)
	enc := json.NewEncoder(w)
	for {
		evs, err := h.o.Store.ListAuditEvents(r.Context(), f)
		if err != nil {
			h.o.Logger.ErrorContext(r.Context(), "audit export failed mid-stream", "err", err)
			return // the truncated stream cannot be repaired; the log says why
		}
		for _, e := range evs {
			if err := enc.Encode(ViewEvent(e)); err != nil {
				return
			}
		}
		if len(evs) < f.Limit {
			return
		}
		f.AfterID = evs[len(evs)-1].ID
	}
}

// verifyAudit walks the chain and names the first broken link.
func (h *Handler) verifyAudit(w http.ResponseWriter, r *http.Request) {
	n, broken, err := audit.Verify(r.Context(), h.o.Store)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := Verification{OK: broken == nil, Checked: n}
	if broken != nil {
		out.Broken = &ChainBreak{EventID: broken.EventID, Reason: broken.Reason}
	}
	rep, err := audit.VerifyTree(r.Context(), h.o.Store, h.o.Ledger, nil)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out.Tree = TreeReport{OK: rep.Problem == nil, Sealed: rep.Sealed, Pending: rep.Pending, CheckpointSize: rep.Head.Size}
	if p := rep.Problem; p != nil {
		out.Tree.Problem = &TreeProblem{Position: p.Position, EventID: p.EventID, Reason: p.Reason}
		out.OK = false
	}
	writeJSON(w, http.StatusOK, out)
}

// auditCheckpoint is GET /admin/audit/checkpoint: the newest signed
// checkpoint (C2SP tlog-checkpoint) and the key that verifies it, for
// keeping outside the database.
func (h *Handler) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	head, err := h.o.Store.LatestAuditHead(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, &httpx.Error{Status: http.StatusNotFound, Code: "no_checkpoint", Message: "Nothing has been sealed yet; try again in a second."})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CheckpointView{Checkpoint: head.Note, Size: head.Size, Root: head.Root, VerifierKey: h.o.AuditKey})
}

// auditProof is GET /admin/audit/events/{id}/proof: the event's inclusion
// proof in the newest checkpoint, with the bytes its leaf covers, so one
// exported event can be checked without the rest of the log.
func (h *Handler) auditProof(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		h.fail(w, r, invalid(map[string]string{"id": "must be an event id"}))
		return
	}
	evs, err := h.o.Store.ListAuditEvents(r.Context(), store.AuditFilter{AfterID: id - 1, Limit: 1})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if len(evs) == 0 || evs[0].ID != id {
		h.fail(w, r, notFound("event"))
		return
	}
	index, head, path, err := audit.InclusionProof(r.Context(), h.o.Store, id)
	if errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, &httpx.Error{Status: http.StatusConflict, Code: "pending", Message: "The event is not sealed into the tree yet; try again in a second."})
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, InclusionProofView{EventID: id, LeafIndex: index, TreeSize: head.Size, Root: head.Root,
		LeafData: string(audit.Canonical(evs[0])), InclusionPath: path, Checkpoint: head.Note, Hash: "RFC 6962 SHA-256"})
}

// tokenEvents is GET /admin/token-events: the token log, by client,
// subject, type and time, with an id cursor.
func (h *Handler) tokenEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.TokenEventFilter{ClientID: q.Get("client"), Subject: q.Get("subject"), Type: store.TokenEventType(q.Get("type")), Limit: 100}
	fields := map[string]string{}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			fields["since"] = "must be an RFC 3339 time"
		}
		f.Since = t
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fields["after"] = "must be an event id"
		}
		f.AfterID = n
	}
	if len(fields) > 0 {
		h.fail(w, r, invalid(fields))
		return
	}
	evs, err := h.o.Store.ListTokenEvents(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	resp := TokenEventPage{Events: make([]TokenEvent, 0, len(evs))}
	for _, e := range evs {
		resp.Events = append(resp.Events, TokenEvent{ID: e.ID, Time: e.Time, Type: string(e.Type), TokenType: string(e.TokenType), RequestID: e.RequestID,
			ClientID: e.ClientID, Subject: e.Subject, GrantType: e.GrantType})
	}
	if len(evs) == f.Limit {
		resp.Next = strconv.FormatInt(evs[len(evs)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

// notificationTypes are what group admins are told about.
var notificationTypes = []string{string(audit.MFARemoved), string(audit.MFAResetRequested), string(audit.MFAResetApproved), string(audit.MFAResetDenied)}

// notifications is GET /admin/notifications: 2SV removals and reset
// requests of the users in the groups the caller administers.
func (h *Handler) notifications(w http.ResponseWriter, r *http.Request) {
	a := actorOf(r)
	if a.UserID == "" {
		h.fail(w, r, &httpx.Error{Status: http.StatusForbidden, Code: "user_required", Message: "Notifications are for admins signed in as themselves."})
		return
	}
	evs, err := h.o.Store.GroupAdminEvents(r.Context(), a.UserID, notificationTypes, 100)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, ViewEvent(e))
	}
	writeJSON(w, http.StatusOK, Notifications{Notifications: out})
}
