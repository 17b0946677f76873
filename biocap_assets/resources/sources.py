"""Where the input data comes from: the configured URLs, or the demo world.

Each source that is not configured falls back to the synthetic demo world,
built on first use by the ``demo_world`` worker under ``$BIOCAP_HOME/demo``.
Assets put the returned ``label`` in their metadata, so a demo run is never
mistaken for real data.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from biocap_assets.common.secrets import redact
from biocap_assets.demo.world import DEMO_SEED, DemoWorld, is_complete
from biocap_assets.resources.launcher import LauncherResource
from biocap_assets.settings import WIKIPEDIA_API_URL, Settings
from biocap_assets.shards.naming import VAL_PREFIX, train_and_val_partitions

DEMO_LABEL = "demo (synthetic)"


@dataclass(frozen=True)
class Source:
    url: str
    label: str
    demo_dir: str = ""  # a demo-world folder to serve (the offline wiki)

    @property
    def is_demo(self) -> bool:
        return self.label == DEMO_LABEL


class SourcesResource(dg.ConfigurableResource):
    demo_root: str = Field(description="folder of the demo world ($BIOCAP_HOME/demo)")
    catalog_url: str | None = Field(default=None, description="BIOCAP_CATALOG_URL")
    shards_url: str | None = Field(default=None, description="BIOCAP_SHARDS_URL")
    val_shards_url: str | None = Field(default=None, description="BIOCAP_VAL_SHARDS_URL")
    wiki_api_url: str | None = Field(default=None, description="BIOCAP_WIKI_API_URL")
    wiki_contact: str = Field(default="", description="BIOCAP_WIKI_CONTACT (User-Agent)")
    eval_data: str = Field(default="", description="BIOCAP_EVAL_DATA (upstream data/eval)")
    eval_images: str = Field(default="", description="BIOCAP_EVAL_IMAGES (image root)")
    inquire_rerank: str = Field(
        default="", description="BIOCAP_INQUIRE_RERANK (local copy of INQUIRE-Rerank)"
    )
    demo_seed: int = DEMO_SEED
    no_demo_because: str = Field(
        default="",
        description="why the demo world may not stand in for an unset source (a production "
        "configuration without BIOCAP_DEMO=1); empty: it may",
    )

    @property
    def data_label(self) -> str:
        """Where the taxa (and so everything derived from them) come from."""
        if self.catalog_url:
            return f"configured (BIOCAP_CATALOG_URL={redact(self.catalog_url)})"
        return DEMO_LABEL

    def demo_world(
        self, context: dg.AssetExecutionContext, launcher: LauncherResource, unset: str
    ) -> DemoWorld:
        """The demo world, standing in for the source variable ``unset``; generated through
        the launcher if it is not complete yet. Outside a laptop's configuration it is an
        error, unless asked for (BIOCAP_DEMO=1)."""
        if self.no_demo_because:
            raise dg.Failure(
                f"{unset} is not set, and this configuration is not a laptop's "
                f"({self.no_demo_because}): the synthetic demo world does not stand in for "
                f"real data there. Set {unset}, or BIOCAP_DEMO=1 to run on the demo on purpose.",
                allow_retries=False,
            )
        root = Path(self.demo_root)
        if not is_complete(root, self.demo_seed):
            context.log.info(f"building the demo world under {root}")
            launcher.run(context, "demo_world", extras={"out": str(root), "seed": self.demo_seed})
            if not is_complete(root, self.demo_seed):
                raise dg.Failure(f"the demo_world worker finished but {root} is incomplete")
        return DemoWorld(root)

    def catalog(self, context: dg.AssetExecutionContext, launcher: LauncherResource) -> Source:
        if self.catalog_url:
            return Source(self.catalog_url, self.data_label)
        world = self.demo_world(context, launcher, "BIOCAP_CATALOG_URL")
        return Source(str(world.catalog), DEMO_LABEL)

    def shards(
        self, context: dg.AssetExecutionContext, launcher: LauncherResource
    ) -> tuple[dict[str, str], str]:
        """Partition key -> input shard URL (validation shards under ``val-`` keys), and the
        source label."""
        if self.shards_url:
            urls = train_and_val_partitions(self.shards_url, self.val_shards_url)
            return urls, "configured (BIOCAP_SHARDS_URL)"
        world = self.demo_world(context, launcher, "BIOCAP_SHARDS_URL")
        urls = train_and_val_partitions(world.train_shards_pattern, world.val_shards_pattern)
        return urls, DEMO_LABEL

    def wiki(self, context: dg.AssetExecutionContext, launcher: LauncherResource) -> Source:
        """The MediaWiki API: as configured; the demo's offline wiki when the taxa are the
        demo's (they are not on Wikipedia); else the English Wikipedia."""
        if self.wiki_api_url:
            return Source(
                self.wiki_api_url, f"configured (BIOCAP_WIKI_API_URL={redact(self.wiki_api_url)})"
            )
        if not self.catalog_url:
            world = self.demo_world(context, launcher, "BIOCAP_CATALOG_URL")
            return Source("", DEMO_LABEL, demo_dir=str(world.wiki_dir))
        return Source(WIKIPEDIA_API_URL, "English Wikipedia")


def shard_partition_keys(settings: Settings) -> list[str]:
    """The partition keys, known when the definitions load (no demo world needed yet)."""
    from biocap_assets.demo.world import DemoSizes

    if settings.shards_url:  # "val-" keys sort after the numbers
        return sorted(train_and_val_partitions(settings.shards_url, settings.val_shards_url))
    sizes = DemoSizes()
    train = [f"{i:06d}" for i in range(sizes.train_shards)]
    return train + [f"{VAL_PREFIX}{i:06d}" for i in range(sizes.val_shards)]
