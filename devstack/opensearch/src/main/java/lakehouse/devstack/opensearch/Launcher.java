package lakehouse.devstack.opensearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;

/**
 * Starts one OpenSearch node in this JVM and keeps it running until the process is told to stop.
 *
 * <p>Usage: {@code Launcher --config-dir DIR [-Ekey=value ...]}. {@code path.home} must be among the
 * settings. The config dir is where {@code synonyms_path} and friends resolve and where
 * {@code log4j2.properties} must be; {@code opensearch.yml} there is read only if it exists.
 *
 * <p>Embedding skips OpenSearch's Bootstrap: no root check, no security manager, no bootstrap
 * checks, no keystore, no jar-hell check. SIGTERM runs the shutdown hook, which closes the node
 * (flushes and releases the data-dir lock) before the JVM exits.
 */
public final class Launcher {

    private static final String NODE_NAME = "devstack";
    private static final long CLOSE_TIMEOUT_S = 20;

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Path configDir = null;
        Settings.Builder settings = Settings.builder();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("--config-dir") && i + 1 < args.length) {
                configDir = Path.of(args[++i]).toAbsolutePath();
            } else if (arg.startsWith("-E") && arg.indexOf('=') > 2) {
                int eq = arg.indexOf('=');
                settings.put(arg.substring(2, eq), arg.substring(eq + 1));
            } else {
                System.err.println("usage: Launcher --config-dir DIR [-Ekey=value ...]; bad argument: " + arg);
                System.exit(2);
            }
        }
        if (configDir == null || !Files.isDirectory(configDir)) {
            System.err.println("Launcher: --config-dir must name an existing directory, got " + configDir);
            System.exit(2);
        }
        settings.put("node.name", NODE_NAME);

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings.build(), Map.of(), configDir, () -> NODE_NAME);
        // Same order as Bootstrap: the error listener before configure (asserted under -ea), and the
        // node name before any pattern with %node_name is rendered.
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(NODE_NAME);
        LogConfigurator.configure(environment);

        CountDownLatch stopped = new CountDownLatch(1);
        try {
            Node node = new LocalNode(environment, LocalNode.PLUGINS);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    node.close();
                    node.awaitClose(CLOSE_TIMEOUT_S, TimeUnit.SECONDS);
                } catch (Exception e) {
                    e.printStackTrace();
                } finally {
                    stopped.countDown();
                }
            }, "devstack-shutdown"));
            node.start();
        } catch (Throwable t) {
            // Exit explicitly: threads the half-built node already started would keep the JVM alive.
            t.printStackTrace();
            System.exit(1);
        }
        // The node's threads are daemon threads, so main must not return while the node runs
        // (Bootstrap keeps a keep-alive thread for this); it returns once the hook closed the node.
        stopped.await();
    }
}
