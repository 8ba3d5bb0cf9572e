// Exits 0 once the broker at args[0] answers a metadata request (DescribeCluster) with a
// controller and at least one broker, 1 after args[1] seconds without one. Run by
// scripts/kafka.sh in Java's single-file source mode with the broker's own jars on the
// classpath, so waiting needs nothing the broker does not already bring.
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class Ready {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "50");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    DescribeClusterResult c = admin.describeCluster();
                    if (c.controller().get(2, TimeUnit.SECONDS) != null
                            && !c.nodes().get(2, TimeUnit.SECONDS).isEmpty()) {
                        System.exit(0);
                    }
                } catch (Exception notYet) {
                    // Not answering yet: ask again.
                }
                Thread.sleep(100);
            }
        }
        System.exit(1);
    }
}
