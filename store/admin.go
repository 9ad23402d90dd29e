package store

import (
	"context"
	"time"
)

// Admins stores who administers the deployment, and the reads and writes
// the admin API needs beyond the other aggregates.
type Admins interface {
	AddAdmin(ctx context.Context, userID string, at time.Time) error
	IsAdmin(ctx context.Context, userID string) (bool, error)
	// RemoveAdmin takes the global admin role away (ErrNotFound if the
	// user did not have it).
	RemoveAdmin(ctx context.Context, userID string) error

	// UpdateUser writes email, display name and disabled.
	UpdateUser(ctx context.Context, u User) error
	// SearchUsers matches query against username, email and display name
	// (case-insensitive substring), ordered by username, after the cursor.
	SearchUsers(ctx context.Context, query, afterUsername string, limit int) ([]User, error)

	GetGroup(ctx context.Context, id string) (Group, error)
	RemoveMember(ctx context.Context, groupID, userID string) error
	GroupMembers(ctx context.Context, groupID string) ([]User, error)
	RemoveGroupAdmin(ctx context.Context, groupID, userID string) error
	GroupAdmins(ctx context.Context, groupID string) ([]User, error)
	// AdministeredGroups returns the groups the user is an admin contact
	// of (none for a disabled user).
	AdministeredGroups(ctx context.Context, userID string) ([]Group, error)
	// GroupPolicyID returns the policy assigned to the group ("" if none).
	GroupPolicyID(ctx context.Context, groupID string) (string, error)
	// PolicyGroups returns the groups a policy is assigned to.
	PolicyGroups(ctx context.Context, policyID string) ([]Group, error)
	DeletePolicy(ctx context.Context, id string) error

	GetResetRequest(ctx context.Context, id string) (ResetRequest, error)
	UpdateClientRedirects(ctx context.Context, id string, redirects, postLogout []string) error
}
