"""Photos, descriptions, expert and crowd ratings, live votes, models, embeddings, search log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('encoder_key', sa.Text(), nullable=False),
    sa.Column('dims', sa.Integer(), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('artifact_path', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('encoder', 'ranker')", name=op.f('ck_models_kind')),
    sa.CheckConstraint('dims > 0', name=op.f('ck_models_dims')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models'))
    )
    op.create_index('uq_models_kind_name_version', 'models', ['kind', 'name', 'version'], unique=True)
    op.create_index('uq_models_one_active_ranker', 'models', ['encoder_key'], unique=True, postgresql_where=sa.text("active AND kind = 'ranker'"))
    op.create_table('photos',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.Text(), nullable=False),
    sa.Column('split', sa.Text(), nullable=False),
    sa.Column('uploader', sa.Text(), nullable=True),
    sa.Column('place', sa.Text(), nullable=True),
    sa.Column('camera', sa.Text(), nullable=True),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f('ck_photos_sha256_hex')),
    sa.CheckConstraint("split IN ('train', 'test', 'upload')", name=op.f('ck_photos_split')),
    sa.CheckConstraint('bytes > 0 AND width > 0 AND height > 0', name=op.f('ck_photos_positive_size')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('sha256', name=op.f('uq_photos_sha256'))
    )
    op.create_index(op.f('ix_photos_file_name'), 'photos', ['file_name'], unique=False)
    op.create_table('descriptions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('author', sa.Text(), nullable=True),
    sa.Column('photo_id', sa.BigInteger(), nullable=True),
    sa.Column('dataset_key', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("source IN ('dataset', 'owner', 'user', 'test')", name=op.f('ck_descriptions_source')),
    sa.CheckConstraint('length(btrim(text)) BETWEEN 1 AND 2000', name=op.f('ck_descriptions_text_length')),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_descriptions_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_descriptions')),
    sa.UniqueConstraint('dataset_key', name=op.f('uq_descriptions_dataset_key'))
    )
    op.create_index(op.f('ix_descriptions_photo_id'), 'descriptions', ['photo_id'], unique=False)
    op.create_table('photo_embeddings',
    sa.Column('photo_id', sa.BigInteger(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('embedding', pgvector.sqlalchemy.VECTOR(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_photo_embeddings_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_photo_embeddings_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('photo_id', 'model_id', name=op.f('pk_photo_embeddings'))
    )
    op.create_index(op.f('ix_photo_embeddings_model_id'), 'photo_embeddings', ['model_id'], unique=False)
    op.create_table('search_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('blocked', sa.Boolean(), nullable=False),
    sa.Column('n_results', sa.Integer(), nullable=False),
    sa.Column('photo_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('took_ms', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_search_log_model_id_models'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search_log'))
    )
    op.create_table('crowd_ratings',
    sa.Column('photo_id', sa.BigInteger(), nullable=False),
    sa.Column('description_id', sa.BigInteger(), nullable=False),
    sa.Column('share', sa.Float(), nullable=False),
    sa.Column('yes', sa.Integer(), nullable=False),
    sa.Column('no', sa.Integer(), nullable=False),
    sa.CheckConstraint('share BETWEEN 0 AND 1', name=op.f('ck_crowd_ratings_share')),
    sa.CheckConstraint('yes >= 0 AND no >= 0', name=op.f('ck_crowd_ratings_counts')),
    sa.ForeignKeyConstraint(['description_id'], ['descriptions.id'], name=op.f('fk_crowd_ratings_description_id_descriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_crowd_ratings_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('photo_id', 'description_id', name=op.f('pk_crowd_ratings'))
    )
    op.create_index(op.f('ix_crowd_ratings_description_id'), 'crowd_ratings', ['description_id'], unique=False)
    op.create_table('crowd_votes',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('photo_id', sa.BigInteger(), nullable=False),
    sa.Column('description_id', sa.BigInteger(), nullable=True),
    sa.Column('query', sa.Text(), nullable=True),
    sa.Column('match', sa.Boolean(), nullable=False),
    sa.Column('client', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('description_id IS NOT NULL OR query IS NOT NULL', name=op.f('ck_crowd_votes_about_something')),
    sa.ForeignKeyConstraint(['description_id'], ['descriptions.id'], name=op.f('fk_crowd_votes_description_id_descriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_crowd_votes_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crowd_votes'))
    )
    op.create_index(op.f('ix_crowd_votes_photo_id'), 'crowd_votes', ['photo_id'], unique=False)
    op.create_table('description_embeddings',
    sa.Column('description_id', sa.BigInteger(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('embedding', pgvector.sqlalchemy.VECTOR(), nullable=False),
    sa.ForeignKeyConstraint(['description_id'], ['descriptions.id'], name=op.f('fk_description_embeddings_description_id_descriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_description_embeddings_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('description_id', 'model_id', name=op.f('pk_description_embeddings'))
    )
    op.create_index(op.f('ix_description_embeddings_model_id'), 'description_embeddings', ['model_id'], unique=False)
    op.create_table('expert_ratings',
    sa.Column('photo_id', sa.BigInteger(), nullable=False),
    sa.Column('description_id', sa.BigInteger(), nullable=False),
    sa.Column('expert_no', sa.SmallInteger(), nullable=False),
    sa.Column('score', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint('expert_no BETWEEN 1 AND 3', name=op.f('ck_expert_ratings_expert_no')),
    sa.CheckConstraint('score BETWEEN 1 AND 4', name=op.f('ck_expert_ratings_score')),
    sa.ForeignKeyConstraint(['description_id'], ['descriptions.id'], name=op.f('fk_expert_ratings_description_id_descriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_expert_ratings_photo_id_photos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('photo_id', 'description_id', 'expert_no', name=op.f('pk_expert_ratings'))
    )
    op.create_index(op.f('ix_expert_ratings_description_id'), 'expert_ratings', ['description_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_expert_ratings_description_id'), table_name='expert_ratings')
    op.drop_table('expert_ratings')
    op.drop_index(op.f('ix_description_embeddings_model_id'), table_name='description_embeddings')
    op.drop_table('description_embeddings')
    op.drop_index(op.f('ix_crowd_votes_photo_id'), table_name='crowd_votes')
    op.drop_table('crowd_votes')
    op.drop_index(op.f('ix_crowd_ratings_description_id'), table_name='crowd_ratings')
    op.drop_table('crowd_ratings')
    op.drop_table('search_log')
    op.drop_index(op.f('ix_photo_embeddings_model_id'), table_name='photo_embeddings')
    op.drop_table('photo_embeddings')
    op.drop_index(op.f('ix_descriptions_photo_id'), table_name='descriptions')
    op.drop_table('descriptions')
    op.drop_index(op.f('ix_photos_file_name'), table_name='photos')
    op.drop_table('photos')
    op.drop_index('uq_models_one_active_ranker', table_name='models', postgresql_where=sa.text("active AND kind = 'ranker'"))
    op.drop_index('uq_models_kind_name_version', table_name='models')
    op.drop_table('models')
