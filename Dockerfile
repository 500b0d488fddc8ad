# Starling in a container: built from source in a Rust image, run from a
# slim Debian one as an unprivileged user.
#
#   docker build -t starling .
#   docker run -p 5222:5222 -v starling-data:/var/lib/starling starling
#
# The config is /etc/starling/starling.toml (packaging/docker.toml; mount
# your own over it or over /etc/starling). STARLING_CLUSTER_SECRET and
# STARLING_STORAGE_URL in the environment replace the file's values.
# docker-compose.yml runs a 3-node cluster on PostgreSQL.

# The Converse.js build the /chat page serves ([http] chat_page), from the
# lock file in xmpp/web.
FROM node:20-bookworm-slim AS converse
WORKDIR /web
COPY xmpp/web/package.json xmpp/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p starling-xmpp --bin starling

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/starling starling \
    && install -d -o starling -g starling -m 0750 /var/lib/starling /etc/starling
COPY --from=build /src/target/release/starling /usr/local/bin/starling
COPY --from=converse /web/node_modules/converse.js/dist /usr/share/starling/converse
COPY --chown=starling:starling packaging/docker.toml /etc/starling/starling.toml
USER starling
WORKDIR /var/lib/starling
VOLUME ["/var/lib/starling", "/etc/starling"]
# Clients, HTTP (admin, APIs, metrics, CometD), cluster peers.
EXPOSE 5222 5223 5269 5280 7701
# With no --config the node reads /etc/starling/starling.toml.
ENTRYPOINT ["starling"]
CMD ["serve"]
