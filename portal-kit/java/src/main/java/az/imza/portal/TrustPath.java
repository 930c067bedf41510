package az.imza.portal;

import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Finds a path from a certificate through the token's {@code chain} to a configured anchor,
 * checking every link's name and signature. Issuers taken from the chain must be allowed to
 * issue ({@link #mayIssue}: the rules SCHEMA.md fixes for every verifier of the kit, applied
 * while searching so that another path is tried); an anchor is trusted as configured. The
 * JDK's CertPathValidator then runs its PKIX rules on the path found here.
 */
final class TrustPath {
    /** Certificates on a path, the end entity and the anchor included (SCHEMA.md). */
    static final int MAX_PATH = 6;
    /**
     * The critical extensions every verifier of the kit accepts (SCHEMA.md: those the JDK's
     * PKIX validator recognises); RFC 5280 4.2: a certificate with any other critical one
     * must be rejected.
     */
    static final Set<String> RECOGNISED_CRITICAL = Set.of(
            "2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", // basic constraints, usages, SAN
            "2.5.29.30", "2.5.29.32", "2.5.29.33", "2.5.29.36", "2.5.29.54"); // names, policies

    private final List<X509Certificate> chain;
    private final List<X509Certificate> anchors;
    // Each (child, issuer) signature is verified at most once however the search backtracks.
    private final Map<List<X509Certificate>, Boolean> links = new HashMap<>();

    private TrustPath(List<X509Certificate> chain, List<X509Certificate> anchors) {
        this.chain = chain;
        this.anchors = anchors;
    }

    /** {@code [cert, issuer, ..., anchor]}, or null when there is no such path. */
    static List<X509Certificate> find(X509Certificate cert, List<X509Certificate> chain,
            List<X509Certificate> anchors) {
        // the end entity's extensions are judged unless it is an anchor itself (pinned)
        if (!anchors.contains(cert) && unrecognisedCritical(cert)) {
            return null;
        }
        List<X509Certificate> start = new ArrayList<>();
        start.add(cert);
        return new TrustPath(chain, anchors).extend(start);
    }

    private List<X509Certificate> extend(List<X509Certificate> path) {
        X509Certificate current = path.get(path.size() - 1);
        if (anchors.contains(current)) { // the chain carried an anchor itself
            return path;
        }
        for (X509Certificate anchor : anchors) {
            if (path.size() < MAX_PATH && issuedBy(current, anchor)) {
                List<X509Certificate> found = new ArrayList<>(path);
                found.add(anchor);
                return found;
            }
        }
        if (path.size() >= MAX_PATH - 1) {
            return null;
        }
        for (X509Certificate candidate : chain) {
            if (!path.contains(candidate) && mayIssue(candidate, path)
                    && issuedBy(current, candidate)) {
                List<X509Certificate> longer = new ArrayList<>(path);
                longer.add(candidate);
                List<X509Certificate> found = extend(longer);
                if (found != null) {
                    return found;
                }
            }
        }
        return null;
    }

    /**
     * Whether {@code candidate} may be the CA over {@code below} (the end entity, then the
     * CAs already under it), as RFC 5280 6.1.4 has it: basicConstraints cA, keyCertSign when
     * a keyUsage is present, no more CAs under it (self-issued ones aside) than its
     * pathLenConstraint allows, and no critical extension outside RECOGNISED_CRITICAL.
     */
    static boolean mayIssue(X509Certificate candidate, List<X509Certificate> below) {
        if (unrecognisedCritical(candidate)) {
            return false;
        }
        int pathLength = candidate.getBasicConstraints(); // -1: not a CA; MAX_VALUE: no limit
        if (pathLength < 0) {
            return false;
        }
        boolean[] usage = candidate.getKeyUsage();
        if (usage != null && (usage.length <= 5 || !usage[5])) { // 5: keyCertSign
            return false;
        }
        int casBelow = 0;
        for (X509Certificate ca : below.subList(1, below.size())) {
            if (!ca.getSubjectX500Principal().equals(ca.getIssuerX500Principal())) {
                casBelow++;
            }
        }
        return casBelow <= pathLength;
    }

    static boolean unrecognisedCritical(X509Certificate cert) {
        Set<String> critical = cert.getCriticalExtensionOIDs();
        return critical != null && !RECOGNISED_CRITICAL.containsAll(critical);
    }

    private boolean issuedBy(X509Certificate child, X509Certificate issuer) {
        if (!child.getIssuerX500Principal().equals(issuer.getSubjectX500Principal())) {
            return false;
        }
        return links.computeIfAbsent(List.of(child, issuer), pair -> {
            try {
                child.verify(issuer.getPublicKey());
                return true;
            } catch (Exception e) { // any failure to verify is "not issued by"
                return false;
            }
        });
    }
}
