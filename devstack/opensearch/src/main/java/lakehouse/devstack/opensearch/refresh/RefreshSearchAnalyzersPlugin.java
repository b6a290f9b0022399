package lakehouse.devstack.opensearch.refresh;

import java.util.List;
import java.util.function.Supplier;

import org.opensearch.action.ActionRequest;
import org.opensearch.cluster.metadata.IndexNameExpressionResolver;
import org.opensearch.cluster.node.DiscoveryNodes;
import org.opensearch.common.settings.ClusterSettings;
import org.opensearch.common.settings.IndexScopedSettings;
import org.opensearch.common.settings.Settings;
import org.opensearch.common.settings.SettingsFilter;
import org.opensearch.core.action.ActionResponse;
import org.opensearch.plugins.ActionPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.rest.RestController;
import org.opensearch.rest.RestHandler;

/**
 * {@code POST /_plugins/_refresh_search_analyzers/<index>}: re-reads the files behind an index's
 * search-time ({@code updateable: true}) analyzers without closing the index.
 *
 * <p>On Amazon OpenSearch Service and with the index-management plugin this endpoint exists; that
 * plugin (Kotlin, extends job-scheduler) is too heavy to embed, so this classpath plugin provides
 * the same route and response shape. The work is the core call index-management makes,
 * {@code MapperService#reloadSearchAnalyzers}. It acts on the shards of this node only, which is
 * every shard on a single-node cluster.
 */
public final class RefreshSearchAnalyzersPlugin extends Plugin implements ActionPlugin {

    @Override
    public List<ActionHandler<? extends ActionRequest, ? extends ActionResponse>> getActions() {
        return List.of(new ActionHandler<>(RefreshSearchAnalyzersAction.INSTANCE, TransportRefreshSearchAnalyzersAction.class));
    }

    @Override
    public List<RestHandler> getRestHandlers(
        Settings settings,
        RestController restController,
        ClusterSettings clusterSettings,
        IndexScopedSettings indexScopedSettings,
        SettingsFilter settingsFilter,
        IndexNameExpressionResolver indexNameExpressionResolver,
        Supplier<DiscoveryNodes> nodesInCluster
    ) {
        return List.of(new RestRefreshSearchAnalyzersAction());
    }
}
