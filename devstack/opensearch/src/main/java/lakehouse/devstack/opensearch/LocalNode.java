package lakehouse.devstack.opensearch;

import java.util.Collection;
import java.util.List;

import lakehouse.devstack.opensearch.refresh.RefreshSearchAnalyzersPlugin;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * An OpenSearch 2.19 node whose modules are classpath plugins instead of a {@code modules/} dir.
 *
 * <p>{@link Node}'s constructor taking plugin classes is protected in 2.x (3.x changed it to
 * {@code Collection<PluginInfo>}), hence the subclass. The classes are referenced directly, not by
 * name, so a renamed module fails the build instead of silently disappearing at runtime.
 */
final class LocalNode extends Node {

    /** The modules this node loads; each is one Maven artifact in the pom. */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,
        CommonAnalysisPlugin.class,
        ReindexPlugin.class,
        MapperExtrasPlugin.class,
        RefreshSearchAnalyzersPlugin.class
    );

    LocalNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        // forbidPrivateIndexSettings=true: the same as a real server (the test framework passes false).
        super(environment, plugins, true);
    }
}
