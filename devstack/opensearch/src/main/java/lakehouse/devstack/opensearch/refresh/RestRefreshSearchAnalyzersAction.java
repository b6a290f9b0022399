package lakehouse.devstack.opensearch.refresh;

import java.util.List;

import org.opensearch.client.node.NodeClient;
import org.opensearch.core.common.Strings;
import org.opensearch.rest.BaseRestHandler;
import org.opensearch.rest.RestRequest;
import org.opensearch.rest.action.RestToXContentListener;

/** REST routes of the refresh call: the current one and the legacy Open Distro spelling. */
public final class RestRefreshSearchAnalyzersAction extends BaseRestHandler {

    @Override
    public String getName() {
        return "devstack_refresh_search_analyzers_action";
    }

    @Override
    public List<Route> routes() {
        return List.of(
            new Route(RestRequest.Method.POST, "/_plugins/_refresh_search_analyzers/{index}"),
            new Route(RestRequest.Method.POST, "/_opendistro/_refresh_search_analyzers/{index}")
        );
    }

    @Override
    protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
        RefreshSearchAnalyzersRequest refresh = new RefreshSearchAnalyzersRequest(
            Strings.splitStringByCommaToArray(request.param("index")));
        return channel -> client.execute(RefreshSearchAnalyzersAction.INSTANCE, refresh, new RestToXContentListener<>(channel));
    }
}
