package dev.trendwatch.examples;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/** {@code --name value} command-line options, checked against the names a program knows. */
final class Args {
    private final Map<String, String> values = new HashMap<>();
    private final String usage;

    Args(String[] argv, Set<String> known, String usage) {
        this.usage = usage;
        for (int i = 0; i < argv.length; i++) {
            String name = argv[i];
            if (name.equals("-h") || name.equals("--help")) {
                System.err.println(usage);
                System.exit(0);
            }
            if (!name.startsWith("--") || !known.contains(name.substring(2)) || i + 1 == argv.length) {
                fail("unexpected argument " + name);
            }
            values.put(name.substring(2), argv[++i]);
        }
    }

    String required(String name) {
        String v = values.get(name);
        if (v == null) {
            fail("--" + name + " is required");
        }
        return v;
    }

    String get(String name, String otherwise) {
        return values.getOrDefault(name, otherwise);
    }

    int positiveInt(String name, int otherwise) {
        String v = values.get(name);
        if (v == null) {
            return otherwise;
        }
        try {
            int n = Integer.parseInt(v);
            if (n >= 1) {
                return n;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        fail("--" + name + " must be a positive integer, not " + v);
        return otherwise;
    }

    private void fail(String message) {
        System.err.println("error: " + message + "\n" + usage);
        System.exit(2);
    }
}
