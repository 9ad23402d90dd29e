package store

import (
	"context"
	"time"
)

// PasswordReset is a single-use password reset link; IDHash is the
// SHA-256 of its token.
type PasswordReset struct {
	IDHash    string
	UserID    string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time
}

// PasswordResets stores reset links.
type PasswordResets interface {
	// CreatePasswordReset stores r and drops the user's earlier unused links.
	CreatePasswordReset(ctx context.Context, r PasswordReset) error
	GetPasswordReset(ctx context.Context, idHash string) (PasswordReset, error)
	// UsePasswordReset marks the link used; false if it already was.
	UsePasswordReset(ctx context.Context, idHash string, at time.Time) (bool, error)
}
