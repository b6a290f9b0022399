package lakehouse.devstack.opensearch.refresh;

import org.opensearch.action.ActionType;

/** The transport action name and response reader for the refresh-search-analyzers call. */
public final class RefreshSearchAnalyzersAction extends ActionType<RefreshSearchAnalyzersResponse> {

    /** Same action name as the index-management plugin, so permissions/logs read the same. */
    public static final String NAME = "indices:admin/refresh_search_analyzers";
    public static final RefreshSearchAnalyzersAction INSTANCE = new RefreshSearchAnalyzersAction();

    private RefreshSearchAnalyzersAction() {
        super(NAME, RefreshSearchAnalyzersResponse::new);
    }
}
