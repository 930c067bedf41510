package az.imza.portal;

import java.io.ByteArrayInputStream;
import java.security.cert.CRLException;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509CRL;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.Base64;

/** Strict decoders for what a token and a configuration carry. */
final class Codec {
    private Codec() {
    }

    /**
     * Standard base64 exactly as docs/protocol.md says (RFC 4648 section 4): the alphabet,
     * '=' padding to a multiple of four, no line breaks. The JDK's decoder alone would also
     * take unpadded text. Returns null when the text is not that.
     */
    static byte[] base64(String text) {
        int n = text.length();
        if (n % 4 != 0) {
            return null;
        }
        int pad = 0;
        if (n > 0 && text.charAt(n - 1) == '=') {
            pad = n > 1 && text.charAt(n - 2) == '=' ? 2 : 1;
        }
        for (int i = 0; i < n - pad; i++) {
            char c = text.charAt(i);
            boolean ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '+' || c == '/';
            if (!ok) {
                return null;
            }
        }
        try {
            return Base64.getDecoder().decode(text);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    /** The challenge: base64url, padding optional (docs/protocol.md). Null when it is not. */
    static byte[] base64url(String text) {
        String bare = text.replaceAll("=+$", "");
        if (bare.length() % 4 == 1) {
            return null;
        }
        for (int i = 0; i < bare.length(); i++) {
            char c = bare.charAt(i);
            boolean ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '_';
            if (!ok) {
                return null;
            }
        }
        try {
            return Base64.getUrlDecoder().decode(bare);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    /** One DER certificate and nothing else (no PEM, no trailing bytes); null otherwise. */
    static X509Certificate certificate(byte[] der) {
        try {
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            X509Certificate cert = (X509Certificate) factory.generateCertificate(
                    new ByteArrayInputStream(der));
            return Arrays.equals(cert.getEncoded(), der) ? cert : null;
        } catch (CertificateException | RuntimeException e) {
            return null;
        }
    }

    /** One DER CRL; null when the bytes are not exactly that. */
    static X509CRL crl(byte[] der) {
        try {
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            X509CRL crl = (X509CRL) factory.generateCRL(new ByteArrayInputStream(der));
            return Arrays.equals(crl.getEncoded(), der) ? crl : null;
        } catch (CertificateException | CRLException | RuntimeException e) {
            return null;
        }
    }
}
