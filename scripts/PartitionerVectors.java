// Prints the partition Java's kafka-clients gives each of a set of keys, as the rows of the
// test table in crates/runtime/src/partitioner.rs (murmur2_vectors_match_java_kafka_clients).
// Run by scripts/partitioner-vectors.sh, which puts the kafka-clients jar of
// examples/java/pom.xml on the class path: the numbers come from the producer's own code
// (BuiltInPartitioner.partitionForKey: toPositive(murmur2(key)) % partitions), not from a copy.
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

public class PartitionerVectors {
    static final int[] PARTITIONS = {3, 4, 12};

    public static void main(String[] args) {
        List<byte[]> keys = new ArrayList<>();
        for (String s : new String[] {
                "", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh",
                "abcdefghi", "v-example-java", "video-000042", "vidéo-✓", "動画🎬",
                "trending/2026"}) {
            keys.add(s.getBytes(StandardCharsets.UTF_8));
        }
        // Bytes with the high bit set in every tail position (Java's bytes are signed).
        keys.add(new byte[] {(byte) 0xff});
        keys.add(new byte[] {(byte) 0x80, (byte) 0xfe});
        keys.add(new byte[] {(byte) 0xff, (byte) 0x80, (byte) 0x00});
        keys.add(new byte[] {(byte) 0xde, (byte) 0xad, (byte) 0xbe, (byte) 0xef, (byte) 0x90});
        System.out.println("// kafka-clients " + org.apache.kafka.common.utils.AppInfoParser.getVersion()
                + ": (key, murmur2 hash, partition of 3, 4, 12)");
        for (byte[] key : keys) {
            StringBuilder row = new StringBuilder("(b\"");
            for (byte b : key) {
                int u = b & 0xff;
                if (u >= 0x20 && u < 0x7f && u != '"' && u != '\\') {
                    row.append((char) u);
                } else {
                    row.append(String.format("\\x%02x", u));
                }
            }
            row.append(String.format("\", 0x%08x, [", Utils.murmur2(key)));
            for (int i = 0; i < PARTITIONS.length; i++) {
                row.append(i == 0 ? "" : ", ")
                        .append(BuiltInPartitioner.partitionForKey(key, PARTITIONS[i]));
            }
            System.out.println(row.append("]),"));
        }
    }
}
