package authn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	qrcode "github.com/skip2/go-qrcode"
)

// TOTP parameters: RFC 6238 defaults every authenticator app supports.
const (
	totpPeriod = 30
	totpDigits = otp.DigitsSix
	totpSkew   = 1 // accept the previous and next step for clock drift
)

// NewTOTPSecret returns a fresh base32 secret (160 bits, as RFC 4226 advises).
func NewTOTPSecret() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic("authn: no randomness: " + err.Error())
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// TOTPURI is the otpauth:// URI an authenticator app scans.
func TOTPURI(issuer, account, secret string) string {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Secret: mustB32(secret), Period: totpPeriod, Digits: totpDigits})
	if err != nil {
		return ""
	}
	return key.URL()
}

func mustB32(s string) []byte {
	b, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(s))
	return b
}

// Enrollment is what an authenticator app needs: the secret, its
// otpauth:// URI and the URI as a QR code (PNG data: URI).
type Enrollment struct {
	Secret string
	URI    string
	QR     string
}

// NewEnrollment describes secret for account under issuer.
func NewEnrollment(issuer, account, secret string) (Enrollment, error) {
	uri := TOTPURI(issuer, account, secret)
	qr, err := QRDataURI(uri)
	return Enrollment{Secret: secret, URI: uri, QR: qr}, err
}

// QRDataURI renders uri (an otpauth:// URI) as a PNG QR code, generated
// locally so the secret never leaves the server, as a data: URI.
func QRDataURI(uri string) (string, error) {
	png, err := qrcode.Encode(uri, qrcode.Medium, 240)
	if err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), nil
}

// TOTPCode returns the code for secret at t (for tests and enrollment checks).
func TOTPCode(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
}

// matchTOTP returns the time step that code is valid for at now, within the
// allowed skew, or ok=false. The caller makes the step single-use.
func matchTOTP(secret, code string, now time.Time) (step int64, ok bool) {
	code = strings.TrimSpace(code)
	if len(code) != int(totpDigits) {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	found := int64(0)
	// Every candidate is computed and compared in constant time, so timing
	// does not reveal which step matched.
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		want, err := TOTPCode(secret, time.Unix((cur+d)*totpPeriod, 0))
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found = cur + d
		}
	}
	return found, found != 0
}

// RecoveryCodeCount is how many recovery codes a user gets.
const RecoveryCodeCount = 10

// NewRecoveryCodes returns RecoveryCodeCount fresh codes like "k7m2-9xq4-p3rt"
// (60 bits each), for showing once.
func NewRecoveryCodes() []string {
	const alphabet = "23456789abcdefghjkmnpqrstuvwxyz" // no 0/o, 1/l/i
	out := make([]string, RecoveryCodeCount)
	for i := range out {
		b := make([]byte, 12)
		if _, err := rand.Read(b); err != nil {
			panic("authn: no randomness: " + err.Error())
		}
		var sb strings.Builder
		for j, c := range b {
			if j > 0 && j%4 == 0 {
				sb.WriteByte('-')
			}
			sb.WriteByte(alphabet[int(c)%len(alphabet)])
		}
		out[i] = sb.String()
	}
	return out
}

// recoveryDigest is HMAC-SHA256 under the server's pepper: codes have enough
// entropy that a slow hash adds nothing, and the pepper means a database dump
// alone cannot be checked against guesses.
func recoveryDigest(pepper []byte, code string) string {
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(code), " ", ""))
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte("recovery-code\x00" + norm))
	return hex.EncodeToString(m.Sum(nil))
}

// NewClientSecret returns a client secret (256 random bits) to show once,
// and the SHA-256 digest to store. Secrets are server-generated, so their
// entropy makes a fast digest safe and keeps the token endpoint fast.
func NewClientSecret() (secret string, digest []byte) {
	secret = RandomToken(32)
	d := sha256.Sum256([]byte(secret))
	return secret, d[:]
}
