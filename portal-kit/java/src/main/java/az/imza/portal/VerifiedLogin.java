package az.imza.portal;

import java.math.BigInteger;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.cert.CertificateEncodingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** A login that passed every check: who logged in, for the portal to map to its user. */
public final class VerifiedLogin {
    private final X509Certificate certificate;
    private final List<X509Certificate> path;
    private final String certificateSha256;

    VerifiedLogin(X509Certificate certificate, List<X509Certificate> path) {
        this.certificate = certificate;
        this.path = Collections.unmodifiableList(new ArrayList<>(path));
        this.certificateSha256 = sha256Hex(certificate);
    }

    /** The authentication certificate. */
    public X509Certificate certificate() {
        return certificate;
    }

    /** The certificate, its issuers and the trust anchor it chained to, in that order. */
    public List<X509Certificate> path() {
        return path;
    }

    /** The subject as an RFC 2253 string (e.g. {@code CN=...,SERIALNUMBER=...,C=AZ}). */
    public String subject() {
        return certificate.getSubjectX500Principal().getName();
    }

    /** The issuer as an RFC 2253 string. */
    public String issuer() {
        return certificate.getIssuerX500Principal().getName();
    }

    public BigInteger serialNumber() {
        return certificate.getSerialNumber();
    }

    /** Lowercase hex SHA-256 of the certificate's DER: a stable key for the user's record. */
    public String certificateSha256() {
        return certificateSha256;
    }

    static String sha256Hex(X509Certificate certificate) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(certificate.getEncoded());
            StringBuilder hex = new StringBuilder(digest.length * 2);
            for (byte b : digest) {
                hex.append(Character.forDigit((b >> 4) & 0xf, 16))
                        .append(Character.forDigit(b & 0xf, 16));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException | CertificateEncodingException e) {
            throw new IllegalStateException("SHA-256 of a parsed certificate", e);
        }
    }

    @Override
    public String toString() {
        return "VerifiedLogin[" + subject() + ", serial " + serialNumber().toString(16) + "]";
    }
}
