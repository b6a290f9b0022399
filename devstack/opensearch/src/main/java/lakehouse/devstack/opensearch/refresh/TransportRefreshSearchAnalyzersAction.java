package lakehouse.devstack.opensearch.refresh;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.opensearch.action.support.ActionFilters;
import org.opensearch.action.support.HandledTransportAction;
import org.opensearch.action.support.IndicesOptions;
import org.opensearch.cluster.metadata.IndexMetadata;
import org.opensearch.cluster.metadata.IndexNameExpressionResolver;
import org.opensearch.cluster.service.ClusterService;
import org.opensearch.common.inject.Inject;
import org.opensearch.core.action.ActionListener;
import org.opensearch.core.action.support.DefaultShardOperationFailedException;
import org.opensearch.core.index.Index;
import org.opensearch.index.IndexService;
import org.opensearch.index.analysis.AnalysisRegistry;
import org.opensearch.index.shard.IndexShard;
import org.opensearch.indices.IndicesService;
import org.opensearch.tasks.Task;
import org.opensearch.threadpool.ThreadPool;
import org.opensearch.transport.TransportService;

/**
 * Rebuilds the updateable search analyzers of the requested indices on this node.
 *
 * <p>{@code MapperService} is per index (its shards on a node share it), so the reload runs once
 * per index and every local shard of that index counts as refreshed. The request cache of those
 * shards is cleared afterwards, because cached results were computed with the old synonyms
 * (Elastic's docs for the equivalent API advise the same). Reading the synonym files is blocking
 * I/O, so the work runs on the management pool, not on the HTTP worker that received the call.
 */
public final class TransportRefreshSearchAnalyzersAction
    extends HandledTransportAction<RefreshSearchAnalyzersRequest, RefreshSearchAnalyzersResponse> {

    private final ClusterService clusterService;
    private final IndicesService indicesService;
    private final AnalysisRegistry analysisRegistry;
    private final IndexNameExpressionResolver resolver;
    private final ThreadPool threadPool;

    @Inject
    public TransportRefreshSearchAnalyzersAction(
        TransportService transportService,
        ActionFilters actionFilters,
        ClusterService clusterService,
        IndicesService indicesService,
        AnalysisRegistry analysisRegistry,
        IndexNameExpressionResolver resolver,
        ThreadPool threadPool
    ) {
        super(RefreshSearchAnalyzersAction.NAME, transportService, actionFilters, RefreshSearchAnalyzersRequest::new);
        this.clusterService = clusterService;
        this.indicesService = indicesService;
        this.analysisRegistry = analysisRegistry;
        this.resolver = resolver;
        this.threadPool = threadPool;
    }

    @Override
    protected void doExecute(Task task, RefreshSearchAnalyzersRequest request, ActionListener<RefreshSearchAnalyzersResponse> listener) {
        threadPool.executor(ThreadPool.Names.MANAGEMENT).execute(() -> {
            try {
                listener.onResponse(refresh(request));
            } catch (Exception e) {
                listener.onFailure(e);
            }
        });
    }

    private RefreshSearchAnalyzersResponse refresh(RefreshSearchAnalyzersRequest request) {
        // strictExpandOpen: an unknown name is an index_not_found error, like the real endpoint.
        Index[] indices = resolver.concreteIndices(clusterService.state(), IndicesOptions.strictExpandOpen(), request.indices());
        int total = 0;
        int successful = 0;
        List<DefaultShardOperationFailedException> failures = new ArrayList<>();
        Map<String, List<String>> refreshed = new LinkedHashMap<>();
        for (Index index : indices) {
            IndexMetadata metadata = clusterService.state().metadata().getIndexSafe(index);
            int shards = metadata.getNumberOfShards();
            total += shards;
            IndexService indexService = indicesService.indexService(index);
            if (indexService == null) {
                for (int shard = 0; shard < shards; shard++) {
                    failures.add(new DefaultShardOperationFailedException(
                        index.getName(), shard, new IllegalStateException("shard is not allocated on this node")));
                }
                continue;
            }
            try {
                List<String> names = indexService.mapperService().reloadSearchAnalyzers(analysisRegistry);
                refreshed.put(index.getName(), names);
                for (IndexShard shard : indexService) {
                    indicesService.clearIndexShardCache(shard.shardId(), false, false, true);
                    successful++;
                }
            } catch (Exception e) {
                for (int shard = 0; shard < shards; shard++) {
                    failures.add(new DefaultShardOperationFailedException(index.getName(), shard, e));
                }
            }
        }
        return new RefreshSearchAnalyzersResponse(total, successful, failures, refreshed);
    }
}
